"""``castray completion bash|zsh``: a completion script written from the parser itself, so it offers
exactly the subcommands and options that exist (no list kept by hand). zsh runs the bash one through
``bashcompinit``, which every zsh ships."""

from __future__ import annotations

import argparse

_BASH = """_castray() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} opts
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "{commands} --help --version" -- "$cur"))
        return
    fi
    case "${{COMP_WORDS[1]}}" in
{cases}
        *) opts="--help";;
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}
complete -o filenames -F _castray castray
"""
_ZSH_PREFIX = "autoload -U +X bashcompinit && bashcompinit\n"


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each subcommand's own parser, by name."""
    for action in parser._actions:  # argparse has no public accessor for its subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    commands = subcommands(parser)
    cases = "\n".join(
        f'        {name}) opts="{" ".join(o for a in sub._actions for o in a.option_strings)}";;'
        for name, sub in commands.items())
    text = _BASH.format(commands=" ".join(commands), cases=cases)
    return _ZSH_PREFIX + text if shell == "zsh" else text
