"""The samplers and pruners a search takes, by name (no imports: the command line's help reads them)."""

SAMPLERS = ("grid", "random", "tpe", "gp", "nsga2")
PRUNERS = ("none", "median", "hyperband")
