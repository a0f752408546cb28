"""Forgetting guards (EWC, L2-SP, replay): loss terms and callbacks a Plan carries (`Plan.loss_terms`,
`Plan.callbacks`), one method per file. Not the NaN/Inf step checks, which are the trainer's
(training/bad_steps.py)."""
