"""`tunehand completion bash|zsh|fish`: shell completion scripts, and `tunehand _complete
devices|playlists`, which the scripts call for names that live on the server.

The scripts are made from the same tables the parser is built from, so they stay in
step with the commands.
"""

from __future__ import annotations

import argparse
import sys

from tunehand.cli.ctl_args import ACTIONS
from tunehand.errors import TunehandError, UsageError

COMMANDS = (
    "serve",
    "admin",
    "login",
    "logout",
    "auth",
    "ctl",
    "receiver",
    "resume",
    "offline",
    "doctor",
    "mpd",
    "demo",
    "completion",
)
DEVICE_ACTIONS = ("transfer", "revoke")
CHOICES = {"shuffle": "on off", "repeat": "off all one"}

BASH = """# tunehand bash completion: eval "$(tunehand completion bash)"
_tunehand() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    if [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=($(compgen -W "%(commands)s" -- "$cur")); return
    fi
    case "$prev" in
        --device) local IFS=$'\\n'; COMPREPLY=($(compgen -W "$(tunehand _complete devices 2>/dev/null)" -- "$cur")); return;;
        --playlist) local IFS=$'\\n'; COMPREPLY=($(compgen -W "$(tunehand _complete playlists 2>/dev/null)" -- "$cur")); return;;
    esac
    [[ ${COMP_WORDS[1]} == ctl ]] || return
    if [[ $COMP_CWORD -eq 2 ]]; then
        COMPREPLY=($(compgen -W "%(actions)s" -- "$cur")); return
    fi
    case "${COMP_WORDS[2]}" in
        %(device_actions)s) local IFS=$'\\n'; COMPREPLY=($(compgen -W "$(tunehand _complete devices 2>/dev/null)" -- "$cur"));;
        playlists)
            if [[ $COMP_CWORD -eq 3 ]]; then COMPREPLY=($(compgen -W "show save delete" -- "$cur"))
            else local IFS=$'\\n'; COMPREPLY=($(compgen -W "$(tunehand _complete playlists 2>/dev/null)" -- "$cur")); fi;;
%(choices)s    esac
}
complete -o default -F _tunehand tunehand
"""

ZSH = """# tunehand zsh completion: eval "$(tunehand completion zsh)"
autoload -U +X bashcompinit && bashcompinit
%(bash)s"""

FISH = """# tunehand fish completion: tunehand completion fish | source
complete -c tunehand -f
complete -c tunehand -n __fish_use_subcommand -a "%(commands)s"
complete -c tunehand -n "__fish_seen_subcommand_from ctl; and not __fish_seen_subcommand_from %(actions)s" -a "%(actions)s"
complete -c tunehand -n "__fish_seen_subcommand_from %(device_actions)s" -a "(tunehand _complete devices 2>/dev/null)"
complete -c tunehand -l device -a "(tunehand _complete devices 2>/dev/null)"
complete -c tunehand -l playlist -a "(tunehand _complete playlists 2>/dev/null)"
complete -c tunehand -n "__fish_seen_subcommand_from playlists" -a "(tunehand _complete playlists 2>/dev/null)"
%(fish_choices)s"""


def script(shell: str) -> str:
    actions = " ".join(ACTIONS)
    fields = {
        "commands": " ".join(COMMANDS),
        "actions": actions,
        "device_actions": "|".join(DEVICE_ACTIONS),
    }
    if shell == "fish":
        fields["device_actions"] = " ".join(DEVICE_ACTIONS)
        fields["fish_choices"] = "".join(
            f'complete -c tunehand -n "__fish_seen_subcommand_from {a}" -a "{c}"\n'
            for a, c in CHOICES.items()
        )
        return FISH % fields
    fields["choices"] = "".join(
        f'        {a}) COMPREPLY=($(compgen -W "{c}" -- "$cur"));;\n' for a, c in CHOICES.items()
    )
    bash = BASH % fields
    if shell == "bash":
        return bash
    if shell == "zsh":
        return ZSH % {"bash": bash}
    raise UsageError(f"completion: unknown shell {shell!r}; use bash, zsh or fish")


def run_completion(args: argparse.Namespace) -> int:
    sys.stdout.write(script(args.shell))
    return 0


def run_complete(args: argparse.Namespace) -> int:
    """Names for the completion scripts, one a line; nothing (and exit 0) on any error,
    so a tab press never prints an error into the command line."""
    from tunehand.cli.ctl import client_for

    try:
        api = client_for(args)
        if args.what == "devices":
            names = [d["name"] for d in api.request("GET", "/v1/devices")["devices"]]
        else:
            names = [p["name"] for p in api.request("GET", "/v1/playlists")["playlists"]]
    except TunehandError:
        return 0
    sys.stdout.write("".join(n + "\n" for n in names if "\n" not in n))
    return 0
