"""Mission layer: state machine, crash-safe records, marking planner, exports and reports."""
