"""The tiled-GEMM backend: its timing model, schedule format and interpreter."""
