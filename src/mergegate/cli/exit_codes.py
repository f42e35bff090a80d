from enum import IntEnum


class ExitCode(IntEnum):
    PASS = 0
    BLOCKED = 1
    USAGE = 2
    INTERNAL = 3
