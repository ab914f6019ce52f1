"""Training: the step, the recipe's loop, what runs share (folder, schedule, meter, state), the
distillation's teachers, torchrun, and test-time adaptation (docs/method.md#training)."""
