"""This organisation's program: stack configuration, its role rules, and the composition per role
of the ``scw_platform`` library's components."""
