"""What a check writes: report.json, report.md, report.xml, the annotations and the plots.

    report        report.json and report.md, written atomically
    junit         report.xml, the check as JUnit XML for CI systems
    annotations   GitHub Actions ``::error`` lines
    plots         the PNG plots (matplotlib)
    regimes       the plots' sample models
"""
