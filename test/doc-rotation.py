#!/usr/bin/env python3
# doc-rotation.py - pastes doc/rotation.md's steps 0-3 into a shell with the built meshca and checks each output is the one the page shows (timestamps aside).
import os, re, shutil, subprocess, sys, tempfile, time

meshca, src = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
page = open(os.path.join(src, "doc", "rotation.md"), encoding="utf-8").read()
body = page[page.index("## 0. The starting point"):page.index("## Steps taken together")]

# (command, expected output lines) for each "$ " line of the fenced blocks; heredocs belong to the command
steps, fence, here = [], False, None
for line in body.splitlines():
    if line.startswith("```"):
        fence = not fence
        continue
    if not fence:
        continue
    if here is not None:
        steps[-1][0] += "\n" + line
        if line == here:
            here = None
    elif line.startswith("$ "):
        cmd = re.sub(r"\s+#[^'\"]*$", "", line[2:])     # the page's trailing comments
        steps.append([cmd, []])
        m = re.search(r"<<(\w+)", cmd)
        here = m.group(1) if m else None
    else:
        steps[-1][1].append(line)

def norm(lines):
    return [re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<time>", l).rstrip() for l in lines]

# a free port on 127.0.0.1 instead of the page's 5690
port = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "free-ports.py")],
                      check=True, capture_output=True, text=True).stdout.strip()
work = tempfile.mkdtemp()
os.environ.pop("MESHCA_STORE", None)
env = dict(os.environ, PATH=os.path.dirname(meshca) + ":" + os.environ["PATH"])
shutil.copytree(os.path.join(src, "manifests/examples/rotation/universal"), work, dirs_exist_ok=True)
controller, passed, failed = None, 0, 0
try:
    for cmd, expected in steps:
        cmd = cmd.replace("5690", port)
        if cmd.endswith("&"):
            controller = subprocess.Popen(cmd[:-1], shell=True, cwd=work, env=env, executable="/bin/bash",
                                          start_new_session=True)
            # the next paste talks to it: wait (bounded) until it listens
            for _ in range(100):
                if "serving" in open(os.path.join(work, "controller.log")).read() if os.path.exists(os.path.join(work, "controller.log")) else False:
                    break
                time.sleep(0.1)
            continue
        if cmd.startswith("kill %1"):
            continue
        # the controller's pass after an apply is asynchronous: a read of its log or of the
        # status is re-read (bounded) until it shows what the page shows
        reader = cmd.startswith(("cat controller.log", "tail ", "meshca inspect"))
        for attempt in range(50 if reader else 1):
            r = subprocess.run(cmd, shell=True, cwd=work, env=env, executable="/bin/bash",
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            got = norm(r.stdout.splitlines())
            if got == norm([l.replace("5690", port) for l in expected]):
                break
            time.sleep(0.2)
        expected = [l.replace("5690", port) for l in expected]
        if got == norm(expected):
            passed += 1
            print("ok: $ " + cmd.splitlines()[0])
        else:
            failed += 1
            print("FAIL: $ " + cmd.splitlines()[0] + f"\n  exit {r.returncode}, expected:\n    "
                  + "\n    ".join(norm(expected)) + "\n  got:\n    " + "\n    ".join(got))
finally:
    if controller:
        os.killpg(controller.pid, 15)
        controller.wait()
    shutil.rmtree(work, ignore_errors=True)
print(f"doc-rotation: {passed} passed, {failed} failed")
sys.exit(0 if failed == 0 and passed >= 20 else 1)
