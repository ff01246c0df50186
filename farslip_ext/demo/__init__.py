"""The embedded end-to-end demo (issue: main job)."""
