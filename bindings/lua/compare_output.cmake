# compare_output.cmake: runs PROG ARG and fails unless its stdout equals the file EXPECTED
# (examples/compare_output.cmake, with the script argument a Lua example needs).
execute_process(COMMAND ${PROG} ${ARG} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
file(READ ${EXPECTED} want)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROG} ${ARG} exited with ${rc}:\n${err}")
endif()
if(NOT out STREQUAL want)
  message(FATAL_ERROR "output of ${PROG} ${ARG}:\n${out}\nexpected:\n${want}")
endif()
