#!/usr/bin/env python3
"""Runs a program under a seccomp filter that makes chosen system calls fail, as a systemd
unit's SystemCallFilter= or RestrictAddressFamilies= would, for tests on a machine whose PID 1
is not systemd.

Usage: seccomp.py RULE... -- PROGRAM [ARG...]
  RULE is NAME=ERRNO          every call of the system call NAME fails with ERRNO
       or socket:FAMILY=ERRNO socket(FAMILY, ...) fails with ERRNO; other families work
       or setsockopt:OPTION=ERRNO  setsockopt(fd, level, OPTION, ...) fails with ERRNO
  NAME is a system call from SYSCALLS below, FAMILY one of FAMILIES, OPTION one of OPTIONS,
  ERRNO a name from errno.

x86_64 only: the tests run the host's own binary. The filter is installed with
PR_SET_NO_NEW_PRIVS, so no privilege is needed, and it is inherited across execve.
"""

import ctypes
import errno
import os
import struct
import sys

# x86_64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl).
SYSCALLS = {
    "socket": 41,
    "setsockopt": 54,
    "openat": 257,
    "openat2": 437,
    "setrlimit": 160,
    "prlimit64": 302,
}
FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16}
OPTIONS = {"SO_RCVBUF": 8}
# The argument a qualified rule matches, and the names it may take: socket's domain,
# setsockopt's option name.
QUALIFIERS = {"socket": (0, FAMILIES), "setsockopt": (2, OPTIONS)}

AUDIT_ARCH_X86_64 = 0xC000003E
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_KILL_PROCESS = 0x80000000

# Classic BPF opcodes.
LD_W_ABS = 0x20
JEQ_K = 0x15
RET_K = 0x06

# struct seccomp_data: nr at 0, arch at 4, instruction_pointer at 8, args[6] at 16.
OFF_NR, OFF_ARCH, OFF_ARG0 = 0, 4, 16
ARG_SIZE = 8


def insn(code, jt, jf, k):
    return struct.pack("=HBBI", code, jt, jf, k)


def program(rules):
    """rules: [(syscall number, (argument index, value) or None, errno)]"""
    prog = [
        insn(LD_W_ABS, 0, 0, OFF_ARCH),
        insn(JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        insn(RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
    ]
    for nr, qualifier, err in rules:
        ret = insn(RET_K, 0, 0, SECCOMP_RET_ERRNO | err)
        if qualifier is None:
            prog += [
                insn(LD_W_ABS, 0, 0, OFF_NR),
                insn(JEQ_K, 0, 1, nr),
                ret,
            ]
        else:
            # Low 32 bits of the argument on little-endian x86_64.
            arg, value = qualifier
            prog += [
                insn(LD_W_ABS, 0, 0, OFF_NR),
                insn(JEQ_K, 0, 3, nr),
                insn(LD_W_ABS, 0, 0, OFF_ARG0 + ARG_SIZE * arg),
                insn(JEQ_K, 0, 1, value),
                ret,
            ]
    prog.append(insn(RET_K, 0, 0, SECCOMP_RET_ALLOW))
    return prog


def parse_rule(rule):
    target, _, err_name = rule.partition("=")
    err = getattr(errno, err_name, None)
    if not err_name or not isinstance(err, int):
        sys.exit(f"seccomp.py: unknown errno in {rule!r}")
    name, _, qualified = target.partition(":")
    if name not in SYSCALLS:
        sys.exit(f"seccomp.py: unknown system call in {rule!r}")
    if not qualified:
        return SYSCALLS[name], None, err
    arg, names = QUALIFIERS.get(name, (None, {}))
    if qualified not in names:
        sys.exit(f"seccomp.py: unknown qualifier in {rule!r}")
    return SYSCALLS[name], (arg, names[qualified]), err


def main(argv):
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        sys.exit(__doc__)
    split = argv.index("--")
    rules = [parse_rule(r) for r in argv[:split]]
    command = argv[split + 1 :]
    if os.uname().machine != "x86_64":
        sys.exit("seccomp.py: x86_64 only")

    code = b"".join(program(rules))
    buf = ctypes.create_string_buffer(code, len(code))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        sys.exit(f"seccomp.py: PR_SET_NO_NEW_PRIVS: {os.strerror(ctypes.get_errno())}")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        sys.exit(f"seccomp.py: PR_SET_SECCOMP: {os.strerror(ctypes.get_errno())}")
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
