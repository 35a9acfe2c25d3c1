"""Program sources are parsed safely from many threads at once (the agents of a round do)."""

import gc
import sys
import threading

from labgap.programs.catalog import library_names, library_program
from labgap.programs.method import parse_source


class CyclicGarbage:
    """Freed by the cycle collector, which runs its finaliser (Python code, so another thread
    may take over) in the middle of whatever allocation triggered the collection."""

    def __init__(self):
        self.me = self

    def __del__(self):
        sum(range(50))


def nested(depth: int, call):
    return call() if depth == 0 else nested(depth - 1, call)


def test_parsing_in_threads_at_different_stack_depths_never_fails():
    sources = [library_program(name).source for name in library_names()]
    errors: list[Exception] = []

    def parse_all():
        for _ in range(100):
            for source in sources:
                try:
                    parse_source(source)
                except SystemError as error:  # plain ast.parse here fails hundreds of times
                    errors.append(error)
                _ = [CyclicGarbage() for _ in range(3)]

    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    gc.set_threshold(50, 5, 5)
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=nested, args=(5 * i, parse_all)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        gc.set_threshold(*threshold)
        sys.setswitchinterval(interval)
    assert errors == []
