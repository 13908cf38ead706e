"""The MDC backend: MAESTRO's input language, HW files, the cost model, the checker, lowering and the on-chip space."""
