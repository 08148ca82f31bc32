"""MMEngine's named instances (``ManagerMixin``: loggers, visualizers, message hubs, default scopes), set
aside and restored so that each test file, and each tool run in the test process, starts as a fresh process
would."""


def instance_table(cls) -> dict:
    """The table of ``cls``'s named instances (``ManagerMixin._instance_dict``), to read, empty and refill.

    MMEngine has no public way to list or drop named instances (``ManagerMixin`` offers ``get_instance``,
    ``get_current_instance`` and ``check_instance_created`` only; its own ``RunnerTestCase`` clears these
    tables directly), so this is the one place the tests reach into the private attribute."""
    return cls._instance_dict


def manager_classes():
    from mmengine.utils import ManagerMixin
    todo, seen = [ManagerMixin], []
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    return seen


class set_aside:
    """Empties MMEngine instance tables (``instance_table``), remembering what they held;
    ``restore()`` puts those entries back (entries made in between stay unless removed by the caller)."""

    def __init__(self, tables):
        self._saved = [(t, dict(t)) for t in tables]
        for t, _ in self._saved:
            t.clear()

    def restore(self) -> None:
        for t, held in self._saved:
            t.update(held)
