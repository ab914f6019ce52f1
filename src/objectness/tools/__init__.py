"""Around the method: `objectness segment`'s files in and out, the speed benchmark and the demo."""
