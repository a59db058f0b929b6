"""`sisearch-report`: tables and plots that compare the runs of a multirun (or any set of run directories).

`runs.py` reads run directories, `table.py` groups runs into configurations and summarises them over seeds,
`plots.py` draws the curves, `cli.py` is the console script. (W&B logging of one run is `sisearch/reporting.py`.)
"""
