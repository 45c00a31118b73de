"""Spin a multi-threaded rclpy executor in a background thread, and shut it down without racing its callbacks.

``executor.spin()`` in a thread, then ``executor.shutdown()``, races: rclpy's shutdown destroys the executor's
guard condition without waiting for callbacks still running in its worker pool (its wait is skipped once the
shut-down flag is set), and a callback that completes a future (an action client's goal response, say) then
schedules the future's done callbacks through that guard and fails ("'NoneType' object has no attribute
'trigger'" printed at exit). So ``BackgroundSpinner`` dispatches with its own ``spin_once`` loop, and ``shutdown``
ends that loop, lets the callbacks already dispatched finish, and only then shuts the executor down.
"""
from __future__ import annotations

import threading


class BackgroundSpinner:
    """``spinner = BackgroundSpinner(executor, name).start()``; at the end ``teardown(nodes, spinner)``, or ``halt``
    and ``shutdown`` around one's own teardown (both idempotent)."""

    def __init__(self, executor, name: str, *, poll_s: float = 0.05) -> None:
        self.executor = executor
        self._poll_s = float(poll_s)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "BackgroundSpinner":
        self._thread.start()
        return self

    def _run(self) -> None:
        from rclpy.executors import ExternalShutdownException, ShutdownException

        context = self.executor.context
        while not self._stopping.is_set() and context.ok():
            try:
                self.executor.spin_once(timeout_sec=self._poll_s)
            except (ExternalShutdownException, ShutdownException):
                break

    def halt(self, timeout_s: float = 5.0) -> None:
        """Dispatch no more callbacks; those already running go on (close nodes that block in one, then ``shutdown``)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """``halt``, wait up to ``timeout_s`` for the running callbacks, then shut the executor down."""
        self.halt(timeout_s)
        # rclpy's MultiThreadedExecutor runs callbacks on a ThreadPoolExecutor it keeps as ``_executor`` and never
        # joins (no public API offers this wait); a waiter thread bounds the wait if a callback hangs
        pool = getattr(self.executor, "_executor", None)
        if pool is not None and hasattr(pool, "shutdown"):
            waiter = threading.Thread(target=pool.shutdown, kwargs={"wait": True}, daemon=True)
            waiter.start()
            waiter.join(timeout=timeout_s)
        self.executor.shutdown(timeout_sec=timeout_s)


def teardown(nodes, spinner: BackgroundSpinner | None) -> None:
    """End the nodes a spinner spins (``spinner`` None: start-up failed before spinning): halt dispatch, ``close()``
    each node that has one (the sim's gripper-action callbacks wait on its stepping thread until then), shut the
    executor down, then destroy each node."""
    nodes = list(nodes)
    if spinner is not None:
        spinner.halt()
    for node in nodes:
        close = getattr(node, "close", None)
        if callable(close):
            close()
    if spinner is not None:
        spinner.shutdown()
    for node in nodes:
        node.destroy_node()
