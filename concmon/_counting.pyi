"""The C counting kernel: the same classes as concmon._kernel, which documents them."""

from concmon._kernel import Counters as Counters
from concmon._kernel import GroupBase as GroupBase
from concmon._kernel import Ticket as Ticket
from concmon._kernel import now as now
from concmon._kernel import setup as setup
