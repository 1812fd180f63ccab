import gc

gc.disable()  # a start is a burst of imports with no garbage to find (~8% of it): serve() turns collection back on

from .main import main  # noqa: E402

main()
