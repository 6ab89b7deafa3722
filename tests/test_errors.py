"""helpers/errors.py: a user's mistake is one line and exit code 2; a bug keeps its traceback."""

import pytest

from helpers.errors import UserError, report_user_errors


def test_a_user_error_is_one_line_on_stderr_and_exit_code_2(capsys):
    @report_user_errors
    def main():
        raise UserError("batch_size must be >= 1, got 0")

    with pytest.raises(SystemExit) as exit:
        main()
    assert exit.value.code == 2
    assert capsys.readouterr().err == "error: batch_size must be >= 1, got 0\n"


def test_anything_else_is_a_bug_and_keeps_its_traceback():
    @report_user_errors
    def main():
        return {}["missing"]

    with pytest.raises(KeyError):
        main()


def test_memory_the_device_refuses_is_the_users_one_line_fix():
    from helpers.errors import memory_is_the_users

    with pytest.raises(UserError, match=r"^out of memory \(RESOURCE_EXHAUSTED: 8.00GiB\): lower batch_size$"):
        with memory_is_the_users("lower batch_size"):
            raise RuntimeError("RESOURCE_EXHAUSTED: 8.00GiB\nmore detail")
    with pytest.raises(ValueError, match="another failure"):  # anything else is left alone
        with memory_is_the_users("lower batch_size"):
            raise ValueError("another failure")
