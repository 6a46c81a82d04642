"""From results to answers: paired comparisons and verdicts, the cells of a study, the
recommendations and the study-level answer, and how related the tasks are."""
