"""The broker side of a delivery: publishing dispatches and reports, and workyard's Redis transport."""
