/**
 * A real AF_UNIX datagram socket for sd_notify tests: a python3 receiver (neither Node
 * nor Bun has unix datagram sockets) that prints each message it gets.
 */

const RECEIVER = `
import json, socket, sys
addr, count = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\\0" + addr[1:] if addr.startswith("@") else addr)
print("bound", flush=True)
s.settimeout(30)
for _ in range(count):
    print(json.dumps(s.recv(65536).decode()), flush=True)
`;

/** A datagram receiver bound to `address`; `next()` resolves with each message in order. */
export async function receiver(address: string, count: number) {
  const proc = Bun.spawn(["python3", "-c", RECEIVER, address, String(count)], { stdin: "ignore", stdout: "pipe", stderr: "inherit" });
  const reader = proc.stdout.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  const next = async (): Promise<string> => {
    while (!buffered.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`receiver ended (exit ${await proc.exited})`);
      buffered += decoder.decode(value, { stream: true });
    }
    const i = buffered.indexOf("\n");
    const line = buffered.slice(0, i);
    buffered = buffered.slice(i + 1);
    return line;
  };
  const first = await next();
  if (first !== "bound") throw new Error(`notify receiver did not bind: ${first}`);
  return {
    next: async () => JSON.parse(await next()) as string,
    [Symbol.asyncDispose]: async () => {
      proc.kill();
      await proc.exited;
    },
  };
}
