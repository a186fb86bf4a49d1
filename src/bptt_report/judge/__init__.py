"""Judging the target: its arrays against the references, the verdict, where it goes wrong.

    compare       one array against a reference: the tolerances, the worst entry
    references    the oracle's and the native torch module's results, here or in oracle processes
    checks        one configuration judged from the target's reply
    crosschecks   manual_bptt's other derivations against the same references (thorough)
    localize      where a disagreement sits: the arrays, the shortest sequence, the lag, the
                  smallest configuration
    coverage      what PASS needs besides agreement: enough configurations, each feature exercised
    results       the result objects, the verdict, their JSON form
"""
