"""``python -m cstp_cli`` (also what ``torchrun -m cstp_cli`` runs)."""

from cstp_cli.cli import main

if __name__ == "__main__":
    main()
