"""A tiny file to try fimls on: complete the body of fib()."""


def fib(n: int) -> int:
    """Return the n-th Fibonacci number."""
    if n < 2:
        return 


if __name__ == "__main__":
    print([fib(i) for i in range(10)])
