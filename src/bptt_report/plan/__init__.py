"""What is checked: the sweep's configurations, drawn from a seed, and its named sizes.

    sweep      the configurations of each cell, inside what the target supports; the tiny ones
               of the finite differences; their names and descriptions
    profiles   quick, default, thorough (``--profile``)
"""
