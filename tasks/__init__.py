"""Task data: the open skill catalog, splits, task families and prompt templates."""
