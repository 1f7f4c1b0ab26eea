"""Running a run: its task graph, the stages each task does, and the runners."""
