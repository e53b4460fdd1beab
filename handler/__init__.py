"""The Lambda code: ``handler.app`` serves requests, ``handler.migrator`` migrates the schema at deploy time.

Both ship in one zip as this package (handler strings in ``app_contract``) with the pure-Python MySQL driver.
Nothing here imports ``modules/`` or ``local/``: in Lambda they do not exist.
"""
