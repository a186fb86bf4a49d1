"""What a check writes: report.json, report.md, report.xml, the annotations and the plots.

    report        every file of a check, written atomically; report.json's content and schema
    markdown      report.md
    junit         report.xml, the check as JUnit XML for CI systems
    annotations   GitHub Actions ``::error`` lines
    plots         the PNG plots (matplotlib)
    regimes       the plots' sample models
"""
