# Python 2.7 (runs in the wstest virtualenv made by install.sh).
#
#   python wstest_local.py <wstest args...>    wstest, listening on 127.0.0.1 only
#   python wstest_local.py --list-cases SPEC   print the case ids SPEC selects
#
# Why a wrapper: wstest's fuzzingserver calls listenWS() without an interface,
# so it binds 0.0.0.0 whatever host the spec's url names; the spec has no key
# for it. Patching the call here keeps the test port on loopback without
# editing the installed package. --list-cases resolves "cases" minus
# "exclude-cases" with wstest's own code, so the summary knows exactly which
# results must exist (a crashed run then shows up as missing cases).
import functools
import json
import sys

from autobahntestsuite import wstest  # must come first: it installs the reactor
from autobahntestsuite import fuzzing
from autobahntestsuite.case import (Cases, CaseCategories, CaseSubCategories,
                                    CaseSetname, CaseBasename)
from autobahntestsuite.caseset import CaseSet


def list_cases(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    case_set = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
    for case_id in case_set.parseSpecCases(spec):
        print(case_id)


if __name__ == '__main__':
    if sys.argv[1:2] == ['--list-cases']:
        list_cases(sys.argv[2])
        sys.exit(0)
    fuzzing.listenWS = functools.partial(fuzzing.listenWS, interface='127.0.0.1')
    sys.argv[0] = 'wstest'
    sys.exit(wstest.run())
