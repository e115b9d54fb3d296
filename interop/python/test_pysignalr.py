"""pysignalr (JSON protocol) against the conformance server: Echo, Add, Fail, WhoAmI, a Counter stream, Ask, 401.

Run with the venv that scripts/test creates: `.venv/bin/python -m unittest -v test_pysignalr` with
COURIER_CONFORMANCE_BIN naming the conformance binary.
"""

import asyncio
import os
import signal
import subprocess
import unittest

from pysignalr.client import SignalRClient
from pysignalr.exceptions import AuthorizationError
from pysignalr.messages import CompletionMessage

TIMEOUT = 10


class Server:
    """The conformance server on a free port, stopped with SIGTERM (and killed if that does not work)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [os.environ["COURIER_CONFORMANCE_BIN"], "--addr", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.process.stdout.readline().strip()
        if not line.startswith("listening on http://"):
            self.process.kill()
            raise RuntimeError(f"unexpected first line: {line!r}")
        self.hub_url = line.removeprefix("listening on ") + "/hub"

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


class Client:
    """A running pysignalr client with awaitable invocations and streams."""

    def __init__(self, hub_url: str, token: str | None = None, answer=None) -> None:
        # The token goes in as a header: pysignalr 1.3.3's access_token_factory only sets the header once the
        # first WebSocket is already open (in its handshake step), so that connection would be anonymous.
        headers = {"Authorization": f"Bearer {token}"} if token is not None else None
        self.client = SignalRClient(hub_url, headers=headers)
        self.opened = asyncio.Event()
        self.errors: dict[str, asyncio.Future] = {}
        self.client.on_open(self._on_open)
        self.client.on_error(self._on_error)
        if answer is not None:
            self.client.on("Answer", answer)
        self.task: asyncio.Task | None = None

    async def _on_open(self) -> None:
        self.opened.set()

    async def _on_error(self, message: CompletionMessage) -> None:
        future = self.errors.pop(message.invocation_id, None)
        if future is not None:
            future.set_exception(RuntimeError(message.error))

    async def start(self) -> None:
        self.task = asyncio.create_task(self.client.run())
        await asyncio.wait_for(self.opened.wait(), TIMEOUT)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    async def invoke(self, method: str, *arguments):
        """The result of `method`, or a RuntimeError with the server's error text."""
        done: asyncio.Future = asyncio.get_running_loop().create_future()

        async def on_completion(message: CompletionMessage) -> None:
            if not done.done():
                done.set_result(message.result)

        # pysignalr names the invocation inside `send`, so the error route is keyed after it is known.
        before = set(self.client._invocation_handlers)
        await self.client.send(method, list(arguments), on_completion)
        (invocation_id,) = set(self.client._invocation_handlers) - before
        self.errors[invocation_id] = done
        return await asyncio.wait_for(done, TIMEOUT)

    async def stream(self, method: str, *arguments) -> list:
        items: list = []
        done: asyncio.Future = asyncio.get_running_loop().create_future()

        async def on_next(item) -> None:
            items.append(item)

        async def on_complete(_message: CompletionMessage) -> None:
            done.set_result(items)

        async def on_error(message: CompletionMessage) -> None:
            done.set_exception(RuntimeError(message.error))

        await self.client.stream(method, list(arguments), on_next, on_complete, on_error)
        return await asyncio.wait_for(done, TIMEOUT)


class PysignalrTest(unittest.IsolatedAsyncioTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.server = Server()

    @classmethod
    def tearDownClass(cls) -> None:
        assert cls.server.stop() == 0

    async def asyncSetUp(self) -> None:
        async def answer(arguments: list) -> str:
            return f"python says: {arguments[0]}"

        self.client = Client(self.server.hub_url, token="py-user", answer=answer)
        await self.client.start()

    async def asyncTearDown(self) -> None:
        await self.client.stop()

    async def test_echo(self) -> None:
        for value in ["text", 42, -1.5, True, None, [1, "two", None], {"a": {"b": [1, 2]}}]:
            self.assertEqual(await self.client.invoke("Echo", value), value)

    async def test_add(self) -> None:
        self.assertEqual(await self.client.invoke("Add", 40, 2), 42)

    async def test_fail(self) -> None:
        with self.assertRaises(RuntimeError) as failure:
            await self.client.invoke("Fail", "from python")
        self.assertEqual(
            str(failure.exception),
            "An unexpected error occurred invoking 'Fail' on the server. HubException: from python",
        )

    async def test_who_am_i(self) -> None:
        self.assertEqual(await self.client.invoke("WhoAmI"), "py-user")

    async def test_counter_stream(self) -> None:
        self.assertEqual(await self.client.stream("Counter", 5, 10), [0, 1, 2, 3, 4])

    async def test_ask_client_result(self) -> None:
        self.assertEqual(await self.client.invoke("Ask", "hello?"), "python says: hello?")

    async def test_bad_token_is_refused(self) -> None:
        refused = Client(self.server.hub_url, token="not a user")
        with self.assertRaises(AuthorizationError):
            await asyncio.wait_for(refused.client.run(), TIMEOUT)


if __name__ == "__main__":
    unittest.main()
