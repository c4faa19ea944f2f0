"""`python -m jhsingle_native_proxy.main`: 0.8.3's way to run the command, kept working."""

from .cli import main

if __name__ == "__main__":
    main()
