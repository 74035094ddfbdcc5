"""`kraftboard cluster`: placeholder until the supervisor lands."""


def add_commands(commands) -> None:
    pass
