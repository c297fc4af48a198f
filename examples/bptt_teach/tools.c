/* tools.c — the packaged programs that draw the pictures (gnuplot for
 * plots, Graphviz's dot for graphs): found on $PATH, run without a shell
 * (no quoting of paths), in the report's directory. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bptt_teach.h"

bool bt_have(const char *prog) {
  const char *path = getenv("PATH");
  if (!prog || !*prog)
    return false;
  char buf[4096];
  while (path && *path) {
    size_t n = strcspn(path, ":");
    if (n > 0 && n + strlen(prog) + 2 < sizeof buf) {
      snprintf(buf, sizeof buf, "%.*s/%s", (int)n, path, prog);
      struct stat st;
      if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
        return true;
    }
    path += n + (path[n] == ':');
  }
  return false;
}

int bt_run(const char *dir, const char *const *argv) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) { /* the child: into dir, output appended to tools.log */
    if (chdir(dir) != 0)
      _exit(126);
    int fd = open("tools.log", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execvp(argv[0], (char *const *)argv);
    _exit(127);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) < 0)
    return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
