"""Entry point for `pulumi preview` / `pulumi up`: config -> composition -> exports."""

from components import config, stacks

stacks.export_all(stacks.build(config.from_pulumi()))
