"""Pure functions behind the CLI verbs, one subpackage per verb (distill, evaluate, pretrain, report,
exchange) plus the multi-process plumbing (distributed); the modules at this level serve several verbs
(run records, seeds, supervised training, autocompile, the recipe catalogue, the Python API)."""
