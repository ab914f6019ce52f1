"""The benchmarks in their published layouts, their metrics and the reports beside the paper's numbers
(docs/method.md#evaluation)."""
