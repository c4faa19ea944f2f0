"""`python -m jhsingle_native_proxy` runs the same command as the console script."""

from .cli import main

if __name__ == "__main__":
    main()
