"""The losses: view synthesis (eq. 8, the paper's only one) and, beyond the paper, the flow fit, motion
masks and distillation (docs/method.md#the-objective, #beyond-the-paper)."""
