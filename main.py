"""CDKTF app: one stack per file in environments/ (``local`` targets the offline emulator, ``aws`` real AWS)."""

import os

# jsii prints a Node end-of-life banner on every run; it is noise for our users.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from cdktf import App

from modules.environments import load_environments
from modules.stack import ServerlessMysqlStack


def main() -> None:
    app = App()
    for environment in load_environments():
        ServerlessMysqlStack(app, environment)
    app.synth()


if __name__ == "__main__":
    main()
