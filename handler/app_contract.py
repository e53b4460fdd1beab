"""The function's environment contract: the variable names and values the handler reads.

The stack (``modules/``) and the local data plane (``local/``) import these names instead of
spelling them again, so the three can never disagree. This module imports nothing.
"""

from __future__ import annotations

DB_HOST = "DB_HOST"
DB_PORT = "DB_PORT"
DB_NAME = "DB_NAME"
DB_USER = "DB_USER"
DB_PASSWORD = "DB_PASSWORD"  # password auth only: never set by the deployed stack
DB_TABLE = "DB_TABLE"
DB_AUTH = "DB_AUTH"
DB_SSL_CA = "DB_SSL_CA"
DB_SSL_VERIFY_IDENTITY = "DB_SSL_VERIFY_IDENTITY"
DB_CONNECT_TIMEOUT = "DB_CONNECT_TIMEOUT"
DB_DEADLINE_MARGIN_MS = "DB_DEADLINE_MARGIN_MS"  # optional: time kept back from each invocation's deadline
RESPONSE_LIMIT = "RESPONSE_LIMIT"
LOG_LEVEL = "LOG_LEVEL"
AWS_REGION = "AWS_REGION"  # set by the Lambda runtime itself
APP_DB_USER = "APP_DB_USER"  # migrator only: the application DB user it creates and grants
APP_DB_SECRET_ARN = "APP_DB_SECRET_ARN"  # migrator only: the secret holding that user's password

#: Lambda handler strings: the request path and the schema migrator ship in one zip, as one package.
REQUEST_HANDLER = "handler.app.lambda_handler"
MIGRATOR_HANDLER = "handler.migrator.lambda_handler"

#: The routes the request function implements: path -> methods. The API may expose any of them; a path it does
#: not know gets 404 and a method it does not implement 405, as API Gateway answers.
ROUTES: dict[str, tuple[str, ...]] = {"/": ("GET",), "/times": ("GET",)}

#: The schema version this release's request path needs (the newest migration); the deploy's migrator brings the
#: database to it before the new code serves requests.
SCHEMA_VERSION = 4

#: Application DB user names (``APP_DB_USER``): a letter, then letters, digits or ``_``, at most 32 characters
#: (MySQL's limit). The migrator splices the name into account statements, so nothing else is accepted.
APP_USER_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,31}$"
APP_USER_NAME_ALLOWED = "a letter, then letters, digits or _, at most 32 characters"

AUTH_IAM = "iam"
AUTH_PASSWORD = "password"
AUTH_MODES = (AUTH_IAM, AUTH_PASSWORD)

DEFAULT_PORT = 3306
DEFAULT_TABLE = "access_times"
#: Names the handler derives from ``DB_TABLE``: ``<table>_count`` (counter shards), ``<table>_schema`` (applied
#: migrations), the procedures ``<table>_record`` (v3, the previous release's) and ``<table>_store`` (v4).
TABLE_SUFFIXES = ("_count", "_schema", "_record", "_store")
#: MySQL identifiers end at 64 characters; the longest suffix must still fit.
TABLE_NAME_MAX_LENGTH = 56
MYSQL_IDENTIFIER_MAX_LENGTH = 64
RESPONSE_LIMIT_DEFAULT = 100
RESPONSE_LIMIT_RANGE = (1, 1000)
CONNECT_TIMEOUT_DEFAULT = 5.0
DEADLINE_MARGIN_MS_DEFAULT = 500
DEADLINE_MARGIN_MS_RANGE = (50, 5000)
LAMBDA_CA_BUNDLE = "/etc/pki/tls/certs/ca-bundle.crt"  # CA bundle shipped in the Lambda runtime image
