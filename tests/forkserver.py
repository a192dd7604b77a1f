"""Runs `python -m MODULE ARGS` for the tests (the `emotic` command, the converter), each in a process of its own,
without paying the imports every time.

`python -m emotic.cli COMMAND` spends about 5 s importing torch, transformers and emotic before the command starts.
This server imports them once, then forks a child per request (the idea of multiprocessing's forkserver): the
child is a separate process with its own exit status, memory and output files and no standard input, and runs the
module as `python -m` does (`runpy`, as `__main__`, with the caller's folder first on `sys.path`): an uncaught
exception prints its traceback and exits 1, `sys.exit` codes and exit handlers (atexit) are a fresh process's,
and the output is flushed. Only the interpreter's teardown of its modules is skipped (`os._exit` after the exit
handlers): in a forked child it would touch, and so copy, every page of the server's heap (3-4 s).
huggingface_hub and transformers read their settings from the environment at import, so conftest.emotic_cli
forks only commands whose environment is the server's (but for variables nothing imported reads) and sends the
others to a fresh interpreter.

Protocol, one JSON line each way: {"module", "argv", "cwd", "env", "stdout", "stderr"} in; {"pid"} when the child
starts, then {"returncode"} when it ends (negative: killed by that signal, as subprocess reports it).
"""

import atexit
import gc
import json
import os
import random
import runpy
import sys

sys.path[0] = os.getcwd()  # as under `python -m`, not this file's folder
import emotic  # noqa: E402,F401  (torch and transformers with it: what `python -m emotic.cli` imports first)


def exit_status(code) -> int:
    """The status `sys.exit(code)` gives a process: None 0, an int itself, anything else printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def child(request: dict):
    """In the forked child: the request's folder, environment, standard streams and arguments, then the module.
    Never returns."""
    os.chdir(request["cwd"])
    sys.path[0] = os.getcwd()
    os.environ.clear()
    os.environ.update(request["env"])  # as the caller passes it; it differs only where nothing imported reads
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                            (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        opened = os.open(path, flags, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = open(os.devnull, encoding="utf-8")  # not the server's request pipe, whatever it had buffered
    # a fresh interpreter's random state, not a copy of the server's shared by every child
    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    sys.argv = [request["module"], *request["argv"]]  # runpy puts the module's file first
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        status = 0
    except SystemExit as exit:
        status = exit_status(exit.code)
    except BaseException:
        sys.excepthook(*sys.exc_info())  # the interpreter's report of an uncaught exception
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(status)


def serve():
    gc.freeze()  # what is imported stays out of the children's collections: their pages stay shared
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(request)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    serve()
