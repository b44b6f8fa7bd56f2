"""Pure functions behind the CLI verbs: pretrain, distill, evaluate."""
