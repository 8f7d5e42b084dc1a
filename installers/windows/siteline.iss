; Siteline for Windows: an Inno Setup 6 script (6.3 or newer: it uses the x64compatible architecture name).
;
;   iscc /DAppVersion=0.1.0 /DDistDir=C:\path\to\dist\siteline /O C:\path\to\dist installers\windows\siteline.iss
;
; installers\windows\build.ps1 does all of it (bundle, smoke test, icons, this). The installer:
; - installs for the current user by default (no administrator needed: %LOCALAPPDATA%\Programs\Siteline);
;   the first page offers "install for all users" (Program Files, asks for administrator rights);
; - adds a Start-menu shortcut to siteline-gui.exe (no console window) and, as options, a desktop shortcut
;   and the install folder on PATH (for siteline.exe, the command line);
; - on uninstall removes the program and its PATH entry but keeps the user's data (vault, devices, settings,
;   logs, plugins in %LOCALAPPDATA%\siteline), and says so.

#ifndef AppVersion
  #error Pass the version: iscc /DAppVersion=X.Y.Z siteline.iss (build.ps1 reads it from the bundle)
#endif
#ifndef DistDir
  ; PyInstaller's one-folder bundle, relative to this script.
  #define DistDir "..\..\dist\siteline"
#endif
#define AppName "Siteline"
#define GuiExe "siteline-gui.exe"
#define CliExe "siteline.exe"

[Setup]
; The AppId ties upgrades and the uninstaller to this product: NEVER change it (a new one makes a second,
; separate "Siteline" in Apps & features). The doubled brace escapes the GUID's opening brace.
AppId={{4C55B5AF-7BEB-42CD-9671-E8E646BE5CFF}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=Siteline engineers
AppComments=Field tool for edge and IoT Linux devices: console, modem, network, A/B slots, logs, safe updates.
#ifdef NumericVersion
VersionInfoVersion={#NumericVersion}
#endif
; Per-user by default; the dialog lets the user choose all users (then Setup asks for administrator rights).
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
; {autopf} is %LOCALAPPDATA%\Programs for a per-user install and Program Files for an all-users one.
DefaultDirName={autopf}\{#AppName}
DisableProgramGroupPage=yes
; PyInstaller builds an x64 bundle on the x64 runner: install it as a 64-bit program, and only where it runs.
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
; PySide6 6.x supports Windows 10 and later.
MinVersion=10.0
; Relative paths are relative to this script's folder; build.ps1 passes /O and /DDistDir.
OutputDir=..\..\dist
OutputBaseFilename=siteline-{#AppVersion}-windows-x64-setup
SetupIconFile=..\icons\siteline.ico
UninstallDisplayIcon={app}\{#GuiExe}
UninstallDisplayName={#AppName}
WizardStyle=modern
; One solid LZMA2 stream: the bundle is many small files of the same kinds (pyd, dll, pyc).
Compression=lzma2/max
SolidCompression=yes
; The PATH task changes the environment: tell Explorer so new terminals see it without logging off.
ChangesEnvironment=yes
; Siteline may be running while it is upgraded or removed: the Restart Manager offers to close it.
CloseApplications=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Messages]
; A doubled %% is a literal % in messages that take arguments.
ConfirmUninstall=Remove %1 from this computer?%n%nYour Siteline data stays where it is: the vault, the device list, settings, logs and plugins in %%LOCALAPPDATA%%\siteline. Delete that folder yourself if you want them gone too.
UninstalledAll=%1 was removed from your computer.%n%nYour data was kept in %%LOCALAPPDATA%%\siteline (the vault, devices, settings, logs and plugins): a new install picks it up again.

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "addtopath"; Description: "Add the install folder to &PATH (run {#CliExe} from a terminal)"; GroupDescription: "Command line:"; Flags: unchecked

[Files]
; The whole one-folder bundle: both programs and _internal\ (Python, Qt, the app).
Source: "{#DistDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[InstallDelete]
; An upgrade replaces the bundle's library folder whole, so no module of the old version is left to be imported.
Type: filesandordirs; Name: "{app}\_internal"

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#GuiExe}"; WorkingDir: "{app}"; Comment: "Field tool for edge and IoT Linux devices"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#GuiExe}"; WorkingDir: "{app}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#GuiExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[Code]
const
  UserEnvironment = 'Environment';
  SystemEnvironment = 'SYSTEM\CurrentControlSet\Control\Session Manager\Environment';

{ PATH lives under HKCU for a per-user install and under HKLM for an all-users one. }
function ReadPath(var Value: String): Boolean;
begin
  if IsAdminInstallMode then
    Result := RegQueryStringValue(HKEY_LOCAL_MACHINE, SystemEnvironment, 'Path', Value)
  else
    Result := RegQueryStringValue(HKEY_CURRENT_USER, UserEnvironment, 'Path', Value);
end;

function WritePath(const Value: String): Boolean;
begin
  { REG_EXPAND_SZ: the entries already there may use %USERPROFILE% and the like. }
  if IsAdminInstallMode then
    Result := RegWriteExpandStringValue(HKEY_LOCAL_MACHINE, SystemEnvironment, 'Path', Value)
  else
    Result := RegWriteExpandStringValue(HKEY_CURRENT_USER, UserEnvironment, 'Path', Value);
end;

function SameDir(const A, B: String): Boolean;
begin
  Result := CompareText(RemoveBackslashUnlessRoot(Trim(A)), RemoveBackslashUnlessRoot(Trim(B))) = 0;
end;

{ Path without any entry naming Dir (any case, with or without a trailing backslash); empty entries dropped. }
function PathWithout(const Path, Dir: String): String;
var
  Rest, Part: String;
  Sep: Integer;
begin
  Result := '';
  Rest := Path;
  while Rest <> '' do
  begin
    Sep := Pos(';', Rest);
    if Sep = 0 then
    begin
      Part := Rest;
      Rest := '';
    end else
    begin
      Part := Copy(Rest, 1, Sep - 1);
      Delete(Rest, 1, Sep);
    end;
    if (Trim(Part) <> '') and not SameDir(Part, Dir) then
    begin
      if Result <> '' then
        Result := Result + ';';
      Result := Result + Part;
    end;
  end;
end;

procedure AddAppToPath;
var
  Path, Dir: String;
begin
  Dir := ExpandConstant('{app}');
  if not ReadPath(Path) then
    Path := '';
  Path := PathWithout(Path, Dir);  { never twice, e.g. after a reinstall }
  if Path <> '' then
    Path := Path + ';';
  if not WritePath(Path + Dir) then
    Log('Could not add ' + Dir + ' to PATH');
end;

procedure RemoveAppFromPath;
var
  Path, Dir, Kept: String;
begin
  Dir := ExpandConstant('{app}');
  if not ReadPath(Path) then
    exit;
  Kept := PathWithout(Path, Dir);
  if (Kept <> Path) and not WritePath(Kept) then
    Log('Could not remove ' + Dir + ' from PATH');
end;

procedure CurStepChanged(CurStep: TSetupStep);
begin
  if CurStep = ssPostInstall then
  begin
    { An upgrade without the task takes a PATH entry of an earlier install away again. }
    if WizardIsTaskSelected('addtopath') then
      AddAppToPath
    else
      RemoveAppFromPath;
  end;
end;

procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
begin
  if CurUninstallStep = usPostUninstall then
    RemoveAppFromPath;
end;
