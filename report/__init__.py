"""Reading run records back: listing runs, joining them on one test set, intervals, paired tests, plots."""
