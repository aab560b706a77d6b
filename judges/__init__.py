"""Judges: grading styles, reply parsers, the rubric and agreement statistics."""
