"""What every stage's data lists and samplers share: the prepared-directory checks, per-rank epoch orders."""
