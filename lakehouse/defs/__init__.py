"""The code location's definitions, one folder per part of the pipeline.

Dagster's folder loader (``dg.load_from_defs_folder``) imports every module here and
collects the assets, checks, jobs, schedules and sensors each declares at module level;
``lakehouse.definitions`` adds resources and the executor. An asset and every check on
it sit in the same folder.
"""
