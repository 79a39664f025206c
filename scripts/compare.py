"""Same as `attnlab-compare SWEEP_DIR`: tables and plots comparing a sweep's variants."""

from attnlab.compare import main

if __name__ == "__main__":
    main()
