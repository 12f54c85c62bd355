#include "trace/trace-hw_convaccel.h"
