from kinase_cli import interrupts

interrupts.install()  # before the CLI's imports, so that an early Ctrl-C ends quietly too
try:
    from kinase_cli.main import main
except KeyboardInterrupt:
    raise SystemExit(interrupts.EXIT_CODE) from None

main()
