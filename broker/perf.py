"""`kraftboard perf`: placeholder until the load tool lands."""


def add_commands(commands) -> None:
    pass
