"""Shared by the pool scripts: a pool of 2 workers with the start method
named by VARIANT, warmed up, and the trivial task."""

import multiprocessing

WORKERS = 2


def square(x):
    return x * x


def noop():
    pass


def pool(method):
    p = multiprocessing.get_context(method).Pool(WORKERS)
    p.map(square, range(1000))
    return p
